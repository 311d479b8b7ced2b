// The dashboard in a real browser (SPEC §11, issue 13): Debian's Chromium driven by
// playwright-core against the real service, found by the accessible names SPEC §11 lists. A job
// created through the API appears with its runs without a reload; a pause with a note made in the
// page is what the API then says; a failing job's runs show its error; search narrows the list;
// Pause all pauses what the filter shows; with auth on, the page asks for a token and a viewer is
// offered no controls. Skipped, saying why, where no Chromium is installed.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Browser, Locator, Page } from 'playwright-core';
import { buildWebOnce, launchChromium, noBrowserReason, type OpenedPage, openPage } from './helpers/browser.ts';
import { testDatabase } from './helpers/db.ts';
import { harness } from './helpers/harness.ts';
import { operationsDir } from './helpers/instance.ts';
import { type GraphQLResult, ServiceProcess, stopAll, waitFor } from './helpers/process.ts';

const skip = noBrowserReason();
const ERROR_TEXT = 'the 1C server answered 503: maintenance';
const OPERATIONS = `export default {
  Noop: async () => {},
  Fail: async () => { throw new Error(${JSON.stringify(ERROR_TEXT)}); },
};
`;
const TOKENS = { viewer: 'dashboard-viewer-token-5d1c', operator: 'dashboard-operator-token-8e2f' };
const UI_TIMEOUT = 15_000;

// Made here, at the top: helpers that register an `after` must not be called from a `before`,
// whose `after` would run as soon as it ends.
const [openDb, authDb, restartDb] = await Promise.all([testDatabase(), testDatabase(), testDatabase()]);
const operations = operationsDir(OPERATIONS);

/** POSTs an operation to the service on `port`, with a token when given; fails on errors. */
async function api<T = Record<string, unknown>>(
  port: number,
  query: string,
  variables: Record<string, unknown> = {},
  token?: string,
): Promise<T> {
  const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  const answer = (await response.json()) as GraphQLResult<T>;
  if (answer.errors?.length || !answer.data) throw new Error(`${query}: ${JSON.stringify(answer.errors)}`);
  return answer.data;
}

const CREATE = `mutation($input: CreateJobInput!) { createJob(input: $input) { id } }`;
const APPLY = `mutation($jobs: [CreateJobInput!]!) { applyJobs(input: { jobs: $jobs }) { created } }`;

/** The list's row of a job: the row holding a link named exactly its id. */
const rowOf = (page: Page, id: string): Locator => page.getByRole('row').filter({ has: page.getByRole('link', { name: id, exact: true }) });
/** The rows of the list that hold a job (the header row holds no link). */
const jobRows = (page: Page): Locator => page.getByRole('row').filter({ has: page.getByRole('link') });

async function until<T>(what: string, predicate: () => T | Promise<T>, timeoutMs = UI_TIMEOUT): Promise<NonNullable<T>> {
  return waitFor(predicate, what, { timeoutMs, intervalMs: 100 });
}

describe('the dashboard in Chromium', { skip: skip ?? false, timeout: 300_000 }, () => {
  let browser: Browser;
  let service: ServiceProcess;
  let port: number;
  const opened: OpenedPage[] = [];

  before(async () => {
    buildWebOnce();
    service = new ServiceProcess({ DATABASE_URL: openDb.url, SERVER_OPERATIONS_DIR: operations });
    [port, browser] = await Promise.all([service.waitUntilListening(), launchChromium()]);
  });
  after(async () => {
    await browser?.close();
    await stopAll();
  });

  /** A new tab on the dashboard, its list read. */
  async function open(): Promise<Page> {
    const tab = await openPage(browser, `http://localhost:${port}/`);
    opened.push(tab);
    await tab.page
      .getByRole('status')
      .filter({ hasText: / jobs$/ })
      .first()
      .waitFor({ timeout: UI_TIMEOUT });
    // Set once: still there at the end only if the page was never reloaded.
    await tab.page.evaluate(() => Object.assign(window, { notReloaded: true }));
    return tab.page;
  }
  after(() => {
    for (const tab of opened) assert.deepEqual(tab.errors, [], 'the page threw or logged no error');
  });

  it('should show a job created through the API, then its runs, without a reload', async () => {
    const page = await open();
    await api(port, CREATE, {
      input: { id: 'live-1', name: 'Appears live', externalCall: 'ServerOperationConnector:Noop', period: '0:0:1' },
    });
    const row = rowOf(page, 'live-1');
    await row.waitFor({ timeout: UI_TIMEOUT });
    // Its strip of recent outcomes fills as its runs end.
    await row.getByRole('img', { name: /Recent runs: \d+ succeeded/ }).waitFor({ timeout: UI_TIMEOUT });
    await row.getByRole('link', { name: 'live-1', exact: true }).click();
    const runs = page.getByRole('table', { name: 'Runs' });
    const before = await until('a run on the job’s page', async () => {
      const count = await runs.getByRole('row').count();
      return count > 1 ? count : 0;
    });
    await until('more runs, live', async () => (await runs.getByRole('row').count()) > before);
    // A due time that came while the run before was still going is a skipped run, on a busy machine.
    await runs
      .getByRole('row')
      .filter({ has: page.getByRole('cell', { name: 'succeeded', exact: true }) })
      .first()
      .waitFor({ timeout: UI_TIMEOUT });
    assert.equal(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded), true);
  });

  it('should pause a job with a note in a confirmed dialog, and the API and the badge agree', async () => {
    await api(port, CREATE, {
      input: { id: 'to-pause', name: 'To pause', externalCall: 'ServerOperationConnector:Noop', period: '1:0:0' },
    });
    const page = await open();
    await rowOf(page, 'to-pause').getByRole('link', { name: 'to-pause', exact: true }).click();
    await page.getByRole('button', { name: 'Pause', exact: true }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor({ timeout: UI_TIMEOUT });
    assert.ok(await dialog.getByRole('button', { name: 'Cancel' }).isVisible(), 'Cancel beside the action');
    await dialog.getByRole('textbox', { name: 'Note' }).fill('until the 1C upgrade is done');
    await dialog.getByRole('button', { name: 'Pause', exact: true }).click();
    await dialog.waitFor({ state: 'hidden', timeout: UI_TIMEOUT });
    const { job } = await api<{ job: { enabled: boolean; pausedNote: string } }>(port, '{ job(id: "to-pause") { enabled pausedNote } }');
    assert.deepEqual(job, { enabled: false, pausedNote: 'until the 1C upgrade is done' });
    await page.getByRole('button', { name: 'Resume', exact: true }).waitFor({ timeout: UI_TIMEOUT });
    await page.getByText('paused', { exact: true }).first().waitFor({ timeout: UI_TIMEOUT });
    await page.getByRole('link', { name: 'All jobs' }).click();
    await rowOf(page, 'to-pause').getByText('paused', { exact: true }).waitFor({ timeout: UI_TIMEOUT });
  });

  it('should show a failing job as failing, and its error in its runs, as the run recorded it', async () => {
    await api(port, CREATE, {
      input: { id: 'broken', name: 'Broken export', externalCall: 'ServerOperationConnector:Fail', period: '0:0:1' },
    });
    const page = await open();
    await rowOf(page, 'broken').getByText('failing', { exact: true }).waitFor({ timeout: UI_TIMEOUT });
    await rowOf(page, 'broken').getByRole('link', { name: 'broken', exact: true }).click();
    const runs = page.getByRole('table', { name: 'Runs' });
    const failed = runs.getByRole('row').filter({ hasText: 'failed' }).first();
    await failed.waitFor({ timeout: UI_TIMEOUT });
    assert.equal(await failed.getByRole('cell').last().textContent(), ERROR_TEXT);
  });

  it('should narrow the list as the search is typed, by id, name or call', async () => {
    const jobs = [
      ...Array.from({ length: 12 }, (_, i) => ({
        id: `alpha-${i}`,
        name: `Alpha ${i}`,
        externalCall: 'ServerOperationConnector:Noop',
        period: '1:0:0',
      })),
      ...Array.from({ length: 5 }, (_, i) => ({
        id: `beta-${i}`,
        name: `Выгрузка ${i}`,
        externalCall: 'ServerOperationConnector:Noop',
        period: '1:0:0',
      })),
    ];
    await api(port, APPLY, { jobs });
    const page = await open();
    const search = page.getByRole('searchbox', { name: 'Search' });
    await search.fill('beta');
    await until('five rows', async () => (await jobRows(page).count()) === 5);
    await search.fill('выгрузка 3');
    await until('one row', async () => (await jobRows(page).count()) === 1);
    assert.ok(await rowOf(page, 'beta-3').isVisible());
    await search.fill('ALPHA-1');
    await until('alpha-1, alpha-10, alpha-11', async () => (await jobRows(page).count()) === 3);
  });

  it('should hold the view while Pause updates is on, and show what came meanwhile once it is off', async () => {
    const page = await open();
    const hold = page.getByRole('switch', { name: 'Pause updates' });
    await hold.check();
    await api(port, CREATE, {
      input: { id: 'held-back', name: 'Held back', externalCall: 'ServerOperationConnector:Noop', period: '1:0:0' },
    });
    // The jobs of the tests before run every second: their events wait too.
    await page.getByText(/^\d+ updates? waiting$/).waitFor({ timeout: UI_TIMEOUT });
    await api(port, '{ job(id: "held-back") { id } }');
    assert.equal(await rowOf(page, 'held-back').count(), 0, 'no new job while updates are paused');
    await hold.uncheck();
    await rowOf(page, 'held-back').waitFor({ timeout: UI_TIMEOUT });
  });

  it('should pause every job the filter shows with Pause all, and no other', async () => {
    await api(port, APPLY, {
      jobs: ['north', 'south', 'east'].flatMap((side) =>
        [1, 2].map((n) => ({ id: `${side}-${n}`, name: `Side ${side}`, externalCall: 'ServerOperationConnector:Noop', period: '1:0:0' })),
      ),
    });
    const page = await open();
    await page.getByRole('searchbox', { name: 'Search' }).fill('north');
    await until('two rows', async () => (await jobRows(page).count()) === 2);
    await page.getByRole('button', { name: 'Pause all' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('textbox', { name: 'Note' }).fill('north site closed');
    await dialog.getByRole('button', { name: 'Pause all' }).click();
    await dialog.waitFor({ state: 'hidden', timeout: UI_TIMEOUT });
    for (const id of ['north-1', 'north-2']) await rowOf(page, id).getByText('paused', { exact: true }).waitFor({ timeout: UI_TIMEOUT });
    const { jobs } = await api<{ jobs: { id: string; enabled: boolean; pausedNote: string | null }[] }>(
      port,
      '{ jobs(ids: ["north-1", "north-2", "south-1", "east-2"]) { id enabled pausedNote } }',
    );
    assert.deepEqual(jobs, [
      { id: 'east-2', enabled: true, pausedNote: null },
      { id: 'north-1', enabled: false, pausedNote: 'north site closed' },
      { id: 'north-2', enabled: false, pausedNote: 'north site closed' },
      { id: 'south-1', enabled: true, pausedNote: null },
    ]);
  });
});

describe('the dashboard in Chromium, with auth on', { skip: skip ?? false, timeout: 300_000 }, () => {
  let browser: Browser;
  let port: number;

  before(async () => {
    buildWebOnce();
    const service = new ServiceProcess({
      DATABASE_URL: authDb.url,
      SERVER_OPERATIONS_DIR: operations,
      AUTH_TOKENS: `grafana:viewer:${TOKENS.viewer},ops:operator:${TOKENS.operator}`,
    });
    [port, browser] = await Promise.all([service.waitUntilListening(), launchChromium()]);
    await api(
      port,
      CREATE,
      { input: { id: 'guarded', name: 'Guarded', externalCall: 'ServerOperationConnector:Noop', period: '1:0:0' } },
      TOKENS.operator,
    );
  });
  after(async () => {
    await browser?.close();
    await stopAll();
  });

  /** Signs in on the token form; resolves once the list is read. */
  async function signIn(page: Page, token: string): Promise<void> {
    const field = page.getByLabel('Token');
    await field.waitFor({ timeout: UI_TIMEOUT });
    assert.equal(await field.getAttribute('type'), 'password');
    await field.fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await rowOf(page, 'guarded').waitFor({ timeout: UI_TIMEOUT });
  }

  it('should ask a viewer for a token, keep it for the tab, and offer no controls', async () => {
    const { page, errors, close } = await openPage(browser, `http://localhost:${port}/`);
    try {
      await signIn(page, TOKENS.viewer);
      assert.equal(await page.getByRole('button', { name: 'Pause all' }).count(), 0);
      assert.equal(await page.getByRole('button', { name: 'Resume all' }).count(), 0);
      await page.reload();
      await rowOf(page, 'guarded').getByRole('link', { name: 'guarded', exact: true }).click();
      await page.getByRole('heading', { name: 'Definition' }).waitFor({ timeout: UI_TIMEOUT });
      for (const name of ['Pause', 'Resume', 'Run now', 'Edit', 'Delete'])
        assert.equal(await page.getByRole('button', { name, exact: true }).count(), 0, `no ${name} for a viewer`);
      // The only errors: the first `me` without a token, answered 401.
      assert.deepEqual(
        errors.filter((error) => !/status of 401/.test(error)),
        [],
      );
    } finally {
      await close();
    }
  });

  it('should offer an operator the controls, and say so when a token is refused', async () => {
    const { page, close } = await openPage(browser, `http://localhost:${port}/`);
    try {
      await page.getByLabel('Token').fill('not-a-token');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').filter({ hasText: 'The token was not accepted.' }).waitFor({ timeout: UI_TIMEOUT });
      await signIn(page, TOKENS.operator);
      await page.getByRole('button', { name: 'Pause all' }).waitFor({ timeout: UI_TIMEOUT });
      await rowOf(page, 'guarded').getByRole('link', { name: 'guarded', exact: true }).click();
      for (const name of ['Pause', 'Run now', 'Edit', 'Delete'])
        await page.getByRole('button', { name, exact: true }).waitFor({ timeout: UI_TIMEOUT });
    } finally {
      await close();
    }
  });
});

describe('the dashboard in Chromium, across a restart of the service', { skip: skip ?? false, timeout: 300_000 }, () => {
  it('should reconnect by itself and catch up from the queries with what happened while it was away', async () => {
    buildWebOnce();
    const port = await freePort();
    const env = { DATABASE_URL: restartDb.url, SERVER_OPERATIONS_DIR: operations, PORT: String(port) };
    const first = new ServiceProcess(env);
    const [, browser] = await Promise.all([first.waitUntilListening(), launchChromium()]);
    try {
      const { page, close } = await openPage(browser, `http://localhost:${port}/`);
      await page.getByRole('status').filter({ hasText: 'Live' }).waitFor({ timeout: UI_TIMEOUT });
      await first.stop();
      await page.getByRole('status').filter({ hasText: 'Reconnecting…' }).waitFor({ timeout: UI_TIMEOUT });
      // Made while no service runs: no event will ever tell the page.
      const h = harness(restartDb.sql);
      await h.jobs.create({
        id: 'made-while-away',
        name: 'Made while away',
        externalCall: 'ServerOperationConnector:Noop',
        period: '1:0:0',
      });
      const second = new ServiceProcess(env);
      await second.waitUntilListening();
      await rowOf(page, 'made-while-away').waitFor({ timeout: 60_000 });
      await page.getByRole('status').filter({ hasText: 'Live' }).waitFor({ timeout: UI_TIMEOUT });
      await close();
    } finally {
      await browser.close();
      await stopAll();
    }
  });
});

/** A port free now, for a service that must come back on the same one. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
